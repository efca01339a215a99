"""The metrics server, scraped over real HTTP with curl; metrics live in their own registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import REGISTRY

from gateway.ops.metrics import Metrics, MetricsServer, serve_metrics
from tests.tools import require_tool


@pytest.fixture
async def server() -> AsyncIterator[MetricsServer]:
    """A metrics server on a free loopback port, closed after the test."""
    async with await serve_metrics(Metrics.create(), "127.0.0.1", 0) as running:
        yield running


async def curl(*args: str) -> tuple[int, str]:
    """Run curl with ``args``; return the HTTP status and the body it printed."""
    exe = require_tool("curl")
    async with asyncio.timeout(30):
        proc = await asyncio.create_subprocess_exec(
            exe,
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--write-out",
            "\n%{http_code}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def test_metrics_are_scraped(server: MetricsServer) -> None:
    """GET /metrics over HTTP shows every product metric with its current value."""
    metrics = server.metrics
    metrics.sessions_active.labels(channel="sftp").inc()
    metrics.sessions_total.labels(channel="sftp").inc()
    metrics.auth_failures_total.labels(channel="ftp", reason="bad_password").inc()
    metrics.uploads_stored_total.labels(channel="sftp", env="R").inc()
    metrics.upload_bytes_total.labels(channel="sftp").inc(1234)
    metrics.uploads_refused_total.labels(channel="ftp", code="108").inc()
    metrics.sets_total.labels(outcome="accepted").inc()
    metrics.set_duration_seconds.observe(0.3)
    metrics.acks_written_total.labels(result="positive").inc()
    metrics.routing_attempts_total.labels(destination="dmfa", outcome="delivered").inc()

    status, body = await curl(f"http://127.0.0.1:{server.port}/metrics")

    assert status == 200
    for sample in (
        'gateway_sessions_active{channel="sftp"} 1.0',
        'gateway_sessions_total{channel="sftp"} 1.0',
        'gateway_auth_failures_total{channel="ftp",reason="bad_password"} 1.0',
        'gateway_uploads_stored_total{channel="sftp",env="R"} 1.0',
        'gateway_upload_bytes_total{channel="sftp"} 1234.0',
        'gateway_uploads_refused_total{channel="ftp",code="108"} 1.0',
        'gateway_sets_total{outcome="accepted"} 1.0',
        'gateway_set_duration_seconds_bucket{le="0.5"} 1.0',
        "gateway_set_duration_seconds_count 1.0",
        'gateway_acks_written_total{result="positive"} 1.0',
        'gateway_routing_attempts_total{destination="dmfa",outcome="delivered"} 1.0',
    ):
        assert sample in body.splitlines()


async def test_content_type_is_prometheus_text(server: MetricsServer) -> None:
    """/metrics is served with the exposition format's content type."""
    status, body = await curl(
        "--output",
        "/dev/null",
        "--write-out",
        "%{content_type}\n%{http_code}",
        f"http://127.0.0.1:{server.port}/metrics",
    )
    assert status == 200
    assert body.startswith("text/plain; version=0.0.4")


def test_registry_is_not_the_global_default() -> None:
    """Two Metrics objects never share counters, and the global registry stays untouched."""
    first, second = Metrics.create(), Metrics.create()
    first.sets_total.labels(outcome="accepted").inc()
    assert second.registry.get_sample_value("gateway_sets_total", {"outcome": "accepted"}) is None
    assert REGISTRY.get_sample_value("gateway_sets_total", {"outcome": "accepted"}) is None


async def test_healthz_answers(server: MetricsServer) -> None:
    """/healthz is 200 while the server runs."""
    assert await curl(f"http://127.0.0.1:{server.port}/healthz") == (200, "ok\n")


async def test_readiness_follows_the_flag(server: MetricsServer) -> None:
    """/readyz is 503 until set_ready(True), and 503 again when draining."""
    url = f"http://127.0.0.1:{server.port}/readyz"
    assert await curl(url) == (503, "not ready\n")
    server.set_ready(True)
    assert await curl(url) == (200, "ready\n")
    server.set_ready(False)
    assert await curl(url) == (503, "not ready\n")


@pytest.mark.parametrize("path", ["/", "/admin", "/metrics/../admin", "/metricsx", "/%2e%2e/"])
async def test_other_paths_are_404(server: MetricsServer, path: str) -> None:
    """Nothing but the three endpoints exists."""
    status, _ = await curl("--path-as-is", f"http://127.0.0.1:{server.port}{path}")
    assert status == 404


async def test_other_methods_are_405(server: MetricsServer) -> None:
    """POST is refused with 405."""
    status, _ = await curl("-X", "POST", "-d", "x", f"http://127.0.0.1:{server.port}/metrics")
    assert status == 405


async def test_head_has_no_body(server: MetricsServer) -> None:
    """HEAD answers the status without a body."""
    status, body = await curl("--head", f"http://127.0.0.1:{server.port}/healthz")
    assert status == 200
    assert body.startswith("HTTP/1.1 200 OK")
    assert "ok\n" not in body.split("\r\n\r\n", 1)[1]


async def test_oversized_request_head_is_refused(server: MetricsServer) -> None:
    """A request head beyond 8 KiB gets 431 and the connection is closed."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_garbage_request_line_is_400(server: MetricsServer) -> None:
    """A request line that is not HTTP/1.x gets 400."""
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\x16\x03\x01 garbage\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")


async def test_close_stops_listening() -> None:
    """After aclose() the port refuses connections."""
    server = await serve_metrics(Metrics.create(), "127.0.0.1", 0)
    port = server.port
    await server.aclose()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
